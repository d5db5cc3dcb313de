"""The FLOP audit: parameters and MACs counted on the built models (flops), the paper's printed
figures (paper) and the table `mpdit flops` prints (report)."""
