"""The dense branch at training and test time (arXiv 1905.00641 section 3.2): face crops, the pixel loss, and the
dense accuracy of predicted meshes on SynthFace."""
