#!/bin/sh
echo "$GREETING from $(hostname), pid $$, uid $(id -u), in $(pwd)"
ls /
grep CapEff /proc/self/status
