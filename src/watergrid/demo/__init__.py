"""The Guangming demo: real district outline and names, synthetic everything else."""
