#!version:1.0.0.1
## Boot file of 00:15:65:a1:b2:c3 (Yealink T46S), written by aps.
## Files load top to bottom; a later file overrides an earlier one.
include:config "y000000000066.cfg"
include:config "001565a1b2c3.cfg"
overwrite_mode = 1
