"""Names the command line needs without importing torch (importing torch costs seconds)."""

MODELS = ("cnn", "mlp")
