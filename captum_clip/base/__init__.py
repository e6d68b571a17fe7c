"""The method contract every captum_clip attribution method shares: inputs, targets, predicted class, outputs."""
