"""Evaluation: answer the last question of each dataset row and compare with the reference answer."""
