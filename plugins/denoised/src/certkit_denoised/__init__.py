"""certkit-denoised: denoised smoothing as a certkit plugin.

A denoiser in front of an off-the-shelf classifier, certified as one base classifier: one
denoising step of a diffusion model (Carlini et al., ICLR 2023), built on ``diffusers``, or a
DnCNN-style denoiser trained with MSE or through a frozen classifier (Salman et al., NeurIPS
2020). It imports only certkit's public API.
"""

__version__ = "0.1.0"
