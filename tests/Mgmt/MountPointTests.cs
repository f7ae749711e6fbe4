using Brickfs.Mgmt.Node;

namespace Brickfs.Tests.Mgmt;

public class MountPointTests
{
    [Test]
    public void The_longest_mount_point_prefix_holds_a_path_even_one_that_does_not_exist()
    {
        var file = Path.GetTempFileName();
        File.WriteAllLines(file,
        [
            "22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw",
            "30 22 0:30 / /srv rw shared:2 - btrfs /dev/sdb rw",
            "31 30 0:31 / /srv/b\\040x rw - xfs /dev/sdc rw",
            "32 22 0:32 / /srvx rw - tmpfs tmpfs rw",
        ]);
        try
        {
            Assert.That(MountPoint.Of("/srv/brick1/not-yet", file), Is.EqualTo(new MountPoint("/srv", "btrfs")));
            Assert.That(MountPoint.Of("/srv/b x/brick", file), Is.EqualTo(new MountPoint("/srv/b x", "xfs")));
            Assert.That(MountPoint.Of("/srvxy/brick", file).IsRoot, "/srvx is not a prefix directory of /srvxy");
            Assert.That(MountPoint.Of("/home/a", file), Is.EqualTo(new MountPoint("/", "ext4")));
        }
        finally
        {
            File.Delete(file);
        }
    }
}
