"""A corpus of odd input files (generated, never committed): see :mod:`tests.corpus.make_corpus`."""
