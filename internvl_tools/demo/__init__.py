"""The demo job (``make demo``) and the sample document it reads.

``python -m internvl_tools.demo --model tiny`` runs it offline with a tiny random checkpoint; the sample page
lives in :mod:`internvl_tools.demo.sample`.
"""
