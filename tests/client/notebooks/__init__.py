"""OML4Py's sample notebooks, reconstructed paragraph by paragraph (tests/client/test_oml_notebooks.py)."""
