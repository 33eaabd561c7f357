"""The foundation, below everything else: config, the exception tree, the records that travel between modules,
text cleaning, URL checks and the public links and ids. Imports nothing of the project above it.
"""
