"""Bridges to other libraries and checkpoint formats: diffusers (`diffusers.py`), taming / LDM (`taming.py`).

Each module imports its third-party dependency lazily, so `import hf_vq.integrations` stays cheap.
"""
