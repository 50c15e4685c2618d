"""Models used in the literature, by name: `create_model(name, num_classes, input_shape)` (lottery.models.registry).

    lenet    LeNet-300-100 (Frankle & Carbin 2019)
    conv     Conv-2/4/6 (Frankle & Carbin 2019)
    resnet   CIFAR ResNet-20/32/44/56/110 (He et al. 2016)
    vgg      CIFAR VGG-11/13/16/19 with batch norm
    torchvision_models   any torchvision classifier as "torchvision:<name>"
    hf       Hugging Face classifiers as "hf:<hub name | folder | model type>" (the `hf` extra)
    presets  prunable sets of known architectures (BERT, ViT) as parameter-name patterns
"""
from lottery.models import conv, lenet, resnet, vgg  # noqa: F401  (registers their models)
from lottery.models.registry import (
                                     HF,
                                     MODELS,
                                     TORCHVISION,
                                     check_name,
                                     create_model,
                                     kaiming_normal_init,
                                     output_layer,
                                     register,
)

__all__ = ["MODELS", "TORCHVISION", "HF", "register", "create_model", "check_name", "kaiming_normal_init", "output_layer"]
