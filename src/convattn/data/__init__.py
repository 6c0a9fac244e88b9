"""Data: ImageFolder pipelines through ``mindspore.dataset``, transforms from a model's default config,
mixup/cutmix, and the bundled quickstart digits."""
from .dataset import (BAD_IMAGE_POLICIES, IMG_EXTENSIONS, BadImageLog, CorruptImageError, ImageFolderSource,
                      create_loader, list_image_folder)
from .digits import digits_tree_ready, digits_tree_size, write_digits_imagefolder
from .mixup import Mixup, smooth_one_hot
from .transforms import eval_transforms, resolve_data_cfg, train_transforms

__all__ = ["BAD_IMAGE_POLICIES", "IMG_EXTENSIONS", "BadImageLog", "CorruptImageError", "ImageFolderSource", "create_loader", "list_image_folder",
           "digits_tree_ready", "digits_tree_size", "write_digits_imagefolder", "Mixup", "smooth_one_hot", "eval_transforms",
           "resolve_data_cfg", "train_transforms"]
