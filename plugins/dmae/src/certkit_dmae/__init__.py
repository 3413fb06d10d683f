"""certkit-dmae: Denoising Masked AutoEncoders (Wu et al., ICLR 2023) as a certkit plugin."""

__version__ = "0.1.0"
