"""Names the command line needs without importing torch (importing torch costs seconds)."""

OPTIMIZERS = ("tngd", "tngd-adam", "adam", "sgd", "ngd", "ngd-cg", "ngd-woodbury")
MODELS = ("cnn", "mlp")
