"""Models: building torchvision classifiers, the CAM layer registry, inputs and precision, the
stored model and the pooled head.
"""
