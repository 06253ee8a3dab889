"""Departments, people, party groups, zone chain leaders and responsibility rules."""
