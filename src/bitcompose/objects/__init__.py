"""The objects experiment: scenes of objects at positions and with prompts, composed with the consistent CFG
conjunction and sampled by reverse diffusion or annealed MCMC, judged by a separately trained evaluator."""
