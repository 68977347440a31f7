"""The local embedded default: a Functions + Durable host and a local Azure control plane."""
