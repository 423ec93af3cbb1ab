"""Classifier-guided Bit Diffusion with annealed MCMC (Reduce, Reuse, Recycle's classifier-guidance experiment on
MNIST, Fashion-MNIST and the 8×8 digits): an unconditional Bit Diffusion model times a noise-conditioned
classifier ``q_t(x)·p_φ(y | x_t, t)^w``, sampled by reverse diffusion or reverse diffusion plus MCMC, judged by a
separately trained classifier on clean images."""
