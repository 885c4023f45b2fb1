"""ACmix for MindSpore."""
