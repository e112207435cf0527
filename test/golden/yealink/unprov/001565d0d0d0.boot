#!version:1.0.0.1
## Boot file of 00:15:65:d0:d0:d0 (Yealink T46S), written by aps.
## Files load top to bottom; a later file overrides an earlier one.
include:config "y000000000066.cfg"
include:config "001565d0d0d0.cfg"
overwrite_mode = 1
