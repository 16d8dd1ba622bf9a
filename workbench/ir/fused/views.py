"""(registered by the pass that creates these ops)"""
