"""The provider contract suite (``suite.py``) and its runs on each provider."""
