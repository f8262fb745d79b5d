"""Face recognition training: the ArcFace margin head (``arcface``) and the resumable trainer of the
verification experiment's embedder (``train``)."""
