"""Data made on the machine itself (no downloads): Fashion-MNIST garments on real photographs."""
