"""Neural-network ops: softmax, norms, losses, attention, convolution, pooling."""
