"""voxmesh.eval"""
