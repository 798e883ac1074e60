from setuptools import find_packages, setup

setup(
    name="sv",
    version="0.1.0",
    description="Speaker verification toolkit in the Kaldi/ESPnet recipe style",
    packages=find_packages(include=["sv", "sv.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch",
        "torchaudio",
        "transformers",
        "peft",
        "kaldiio",
        "numpy",
        "scipy",
        "tqdm",
        "soundfile",
        "PyYAML",
    ],
)
