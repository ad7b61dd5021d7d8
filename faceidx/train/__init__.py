"""FaceNet-style training: triplet loss with online mining, P x K sampling, checkpoints, export."""
