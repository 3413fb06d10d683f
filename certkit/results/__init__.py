"""Results files: writing (per-image rows + metadata sidecar), reading, metrics and reports."""
