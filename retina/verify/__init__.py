"""Face verification support: MTCNN detection (``mtcnn``) and 5-point similarity alignment (``align``)."""
