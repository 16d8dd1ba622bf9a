"""(kernels of the fused ops this family of passes creates)"""
