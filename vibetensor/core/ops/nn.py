"""Neural-network ops, split by kind: softmax and norms (nn_norm), losses (nn_loss), embedding and
dropout (nn_embed), attention (nn_attention), convolution and pooling (nn_conv)."""
from . import nn_norm, nn_loss, nn_embed, nn_attention, nn_conv  # noqa: F401
