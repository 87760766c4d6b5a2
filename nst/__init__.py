"""Neural style transfer after Gatys, Ecker & Bethge 2015 (arXiv:1508.06576), on TensorFlow/Keras."""

import os

# TensorFlow's C++ start-up chatter (CPU feature notices) drowns our one-line messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
