"""distilabel pipelines for synthetic data (SmolTalk-style) and the helpers they share."""

import warnings

# distilabel 1.5.3 declares pydantic fields in a way pydantic 2.12+ warns about on every import.
warnings.filterwarnings("ignore", message="The 'default' attribute with value None was provided")
