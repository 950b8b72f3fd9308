"""`python -m data_pipeline.native`: compiles the dynamic-masking kernel."""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from data_pipeline import native  # noqa: E402

sys.exit(native.main())
