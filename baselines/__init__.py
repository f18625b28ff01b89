"""Re-implementations of the methods VL-UR is compared with; one module per method, each registers itself."""
