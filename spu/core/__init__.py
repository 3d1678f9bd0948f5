"""The bottom layer: errors, problem types and the exact linear algebra of the SPU's dynamics.

It imports nothing from circuits/, training/, analysis/ or the rest of spu/, so every other
package can build on it without an import cycle (tests/test_layering.py checks this)."""
