"""voxmesh.train"""
