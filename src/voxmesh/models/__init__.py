"""The methods: one module a method, each registered by name (see :mod:`voxmesh.models.registry`).

Importing this package registers every method; ``model_class("faceformer")`` returns its class.
"""

from voxmesh.models.base import TalkingFaceModel
from voxmesh.models.registry import available_methods, compared_methods, method_info, model_class, register

# Imported for their @register side effect; keep one line a method. The order is the
# benchmark's: the baselines, then the headline method, then the emotion method.
from voxmesh.models.faceformer import FaceFormer  # noqa: E402
from voxmesh.models.codetalker import CodeTalker  # noqa: E402
from voxmesh.models.gldi import GLDiTalker  # noqa: E402
from voxmesh.models.emoface import EmoFace  # noqa: E402

__all__ = ["CodeTalker", "EmoFace", "FaceFormer", "GLDiTalker", "TalkingFaceModel", "available_methods",
           "compared_methods", "method_info", "model_class", "register"]
