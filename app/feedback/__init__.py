"""Prompt feedback from the cards, and what it changes in what is shown."""
