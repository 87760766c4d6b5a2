"""Neural doodles: semantic maps and the label maps derived from them (Champandard 2016, arXiv:1603.01768)."""
