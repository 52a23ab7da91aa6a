"""Hot loops (MinHash, decomposition), each with a simple reference twin for tests."""
