"""Stub actors: real Pykka actors implementing an actor boundary in the simplest way possible
(in the spirit of Mopidy's dummy backend), with knobs to make them slow, silent or failing."""
