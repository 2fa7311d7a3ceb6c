#!/bin/sh
# Prints what this variant knows about itself.
cat /app/greeting.txt
echo "running on: $(uname -m)"
cat /app/built-for /app/built-on
