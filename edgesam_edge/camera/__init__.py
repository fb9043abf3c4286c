"""The real-time camera loop: sources (by URI), the prompt tracker, the loop, rendering and sinks.

Submodules are imported on use; nothing here starts threads or opens devices at import.
"""
