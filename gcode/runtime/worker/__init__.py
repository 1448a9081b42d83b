"""The worker actor: computes coded partial gradients with torch, served over Ray or sockets."""
