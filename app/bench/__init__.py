"""`doppel bench`: spoken questions through the real pipeline, measured against its own engines.

The runner plays synthetic speech at real-time pace into a headless
``Conversation``, reads the numbers from the metrics observer and the event
stream, runs the same engines directly (the limit) and as a naive sequential
chain, and writes a JSON file with every sample, a Markdown table and a PNG.
"""
