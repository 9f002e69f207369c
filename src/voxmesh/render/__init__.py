"""voxmesh.render"""
